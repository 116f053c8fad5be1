"""Model directories turned into what deployment uses: CTranslate2 (Transformers) and int8."""
