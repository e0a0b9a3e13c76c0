"""A loaded model answering: loading, the Critic API, shared-prefix read-outs, fixed shapes, chat."""
