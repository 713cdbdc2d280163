"""What requests cost: billed usage and its price (`usage`), the price catalog (`catalog`), and what a hedge
will cost before it is sent (`prefix`: the prompt's cacheable prefix; `prompt_cache`: what each provider likely
holds in its prompt cache; `estimate`: the expected usage of an attempt).

Kept free of imports at package level: the config loader imports the catalog lazily, and the catalog imports
the config's `Price`.
"""
