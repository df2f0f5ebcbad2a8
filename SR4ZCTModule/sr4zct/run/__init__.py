"""Running an enhancement: options, checks, pipeline, model file, preview, events, background process."""
