"""The demo: ``python -m oscar_langchain.demo`` (``make demo``)."""
