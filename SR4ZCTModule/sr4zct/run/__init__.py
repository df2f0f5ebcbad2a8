"""Running an enhancement: options, pipeline, time budget, progress, events, background process."""
