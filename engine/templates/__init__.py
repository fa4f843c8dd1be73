"""Built-in teacher prompt templates (zh.txt is the seed's, en.txt its English counterpart)."""
