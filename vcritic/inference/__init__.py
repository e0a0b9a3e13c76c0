"""A loaded model answering: loading, the encoder and the runner, the Critic API on them, shared-prefix read-outs,
batching (padded or in fixed shapes), chat."""
