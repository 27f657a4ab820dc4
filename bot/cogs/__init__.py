"""Thin discord.py adapters over `bot.services` and the stores."""
