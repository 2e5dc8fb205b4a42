"""Publish: push a built set to the Hugging Face Hub (:mod:`.hub`) with its licence (:mod:`.licences`)."""
