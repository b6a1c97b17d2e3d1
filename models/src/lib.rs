pub fn hello() {}

// Text side: tokenizer, streaming detokenizer, chat template, tiny tokenizer.
pub mod chat_messages;
pub mod chat_template;
pub mod detokenizer;
pub mod tiny_tokenizer;
pub mod tokenizer;
pub mod tokenizer_config;
