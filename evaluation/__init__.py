"""The evaluation harness: the paper's protocol (zero-shot, linear probe, retrieval) on any model and folder.

Small modules that the command line (`plipbot/cli_eval.py`) and other features (few-shot adapters, the
bot's `/labels test`) share: `datasets` (labelled folders, image-text pairs), `metrics`, `plots`
(confusion matrix and reliability diagram PNGs), `embedding_cache`, and one module per protocol.
"""
