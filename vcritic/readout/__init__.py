"""What a judge is asked, how its answer is read, and what comes back: prompts, tasks, read-outs, results."""
