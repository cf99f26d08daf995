"""The web demo: a Gradio app over the same inference engine as the `sr` command (`sr demo`)."""
