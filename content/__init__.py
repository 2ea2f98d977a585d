"""The curated FAQ: data files, their loading, validation and storage."""

from pathlib import Path

CONTENT_DIR = Path(__file__).resolve().parent
FAQ_DIR = CONTENT_DIR / "faq"
DICTIONARY_FILE = CONTENT_DIR / "dictionary.yaml"
INTENTS_FILE = CONTENT_DIR / "intents.yaml"
MENU_FILE = CONTENT_DIR / "menu.yaml"
TEMPLATES_DIR = CONTENT_DIR / "templates"
