"""Model side of plipbot: image decoding, encoders, weights and preprocessing."""
