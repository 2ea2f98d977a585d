"""The WeChat bot: understanding questions and answering over the WeChat protocol."""
