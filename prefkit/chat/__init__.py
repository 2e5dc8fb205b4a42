"""Chat: the target model's tokenizer and chat template, TRL-exact tokenization, token counts and text rendering.

:mod:`.templates` built-in templates (data files) and rendering; :mod:`.tokenizer` loading a tokenizer without
weights and its hash; :mod:`.target` what a set is prepared for (``--tokenizer`` / ``--chat-template``);
:mod:`.tokenize` TRL's ``DPOTrainer`` tokenization; :mod:`.lengths` fast token counts by that rule;
:mod:`.render` text rows (``--output-format text``).
"""
