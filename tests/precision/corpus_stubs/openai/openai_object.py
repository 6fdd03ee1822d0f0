"""The one name stanford_alpaca's utils.py imports from openai<1."""


class OpenAIObject(dict):
    pass
