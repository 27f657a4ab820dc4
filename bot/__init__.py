"""Discord side of plipbot: thin cogs over pure answer-building modules (render, reply)."""
