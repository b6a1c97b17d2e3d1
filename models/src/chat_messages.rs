//! Chat messages as mlx-vlm 0.7.10 (`prompt_utils.py`) builds them for Gemma 4, and the prompt
//! string it makes from them: the checkpoint's chat template when there is one, else its plain
//! fallback (`_messages_to_plain_prompt`).
//!
//! Gemma 4 uses mlx-vlm's `LIST_WITH_IMAGE_TYPE_TEXT` format: every user message is a list of
//! parts, image parts first, then one text part `{"type": "text", "text": t, "content": t}`;
//! system messages are lists too, assistant messages plain strings.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::tokenizer_config::TokenizerConfig;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: MessageContent,
}

/// A message body: a string, or a list of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One part of a list-shaped message body.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentPart {
    Text(String),
    Image,
    Audio,
    Video,
}

impl Serialize for ContentPart {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self {
            // mlx-vlm's MessageBuilder.text_message carries the text under both keys.
            ContentPart::Text(text) => {
                map.serialize_entry("type", "text")?;
                map.serialize_entry("text", text)?;
                map.serialize_entry("content", text)?;
            }
            ContentPart::Image => map.serialize_entry("type", "image")?,
            ContentPart::Audio => map.serialize_entry("type", "audio")?,
            ContentPart::Video => map.serialize_entry("type", "video")?,
        }
        map.end()
    }
}

impl ChatMessage {
    /// A message whose content is a plain string.
    pub fn text(role: &str, text: &str) -> Self {
        Self {
            role: role.to_string(),
            content: MessageContent::Text(text.to_string()),
        }
    }

    /// A user prompt with `num_images` images, as mlx-vlm formats it for Gemma 4: the image
    /// parts first, then the text part (also when there is no image).
    pub fn user_with_images(text: &str, num_images: usize) -> Self {
        let mut parts = vec![ContentPart::Image; num_images];
        parts.push(ContentPart::Text(text.to_string()));
        Self {
            role: "user".to_string(),
            content: MessageContent::Parts(parts),
        }
    }

    /// A system message as mlx-vlm formats it for Gemma 4 (a one-part list).
    pub fn system(text: &str) -> Self {
        Self {
            role: "system".to_string(),
            content: MessageContent::Parts(vec![ContentPart::Text(text.to_string())]),
        }
    }

    /// An assistant message (mlx-vlm turns assistant content back into a string).
    pub fn assistant(text: &str) -> Self {
        Self::text("assistant", text)
    }
}

/// mlx-vlm's `_messages_to_plain_prompt`: a lone user message is its flattened content;
/// otherwise `Role: content` lines, plus `Assistant:` for the generation prompt.
pub fn plain_prompt(
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    config: &TokenizerConfig,
) -> String {
    let image_token = config.token("image_token").unwrap_or("<image>");
    let video_token = config.token("video_token").unwrap_or("<video>");
    let flat: Vec<(&str, String)> = messages
        .iter()
        .map(|m| {
            (
                m.role.as_str(),
                flatten(&m.content, image_token, video_token),
            )
        })
        .collect();
    match flat.as_slice() {
        [] => return String::new(),
        [(role, content)] if *role == "user" => return content.clone(),
        _ => {}
    }
    let mut lines: Vec<String> = flat
        .iter()
        .map(|(role, content)| match *role {
            "system" | "user" | "assistant" | "tool" => {
                let prefix = capitalize(role);
                if content.is_empty() {
                    format!("{prefix}:")
                } else {
                    format!("{prefix}: {content}")
                }
            }
            _ => content.clone(),
        })
        .collect();
    if add_generation_prompt {
        lines.push("Assistant:".to_string());
    }
    py_strip(&lines.join("\n")).to_string()
}

/// mlx-vlm's `_flatten_content`: text parts and media markers, with a space inserted after a
/// marker when the next text does not start with whitespace.
fn flatten(content: &MessageContent, image_token: &str, video_token: &str) -> String {
    let parts = match content {
        MessageContent::Text(text) => return text.clone(),
        MessageContent::Parts(parts) => parts,
    };
    let markers = [image_token, video_token, "<audio>", "<video>"];
    let mut out = String::new();
    let mut prev_is_marker = false;
    for part in parts {
        let piece = match part {
            ContentPart::Text(t) => t.as_str(),
            ContentPart::Image => image_token,
            ContentPart::Audio => "<audio>",
            ContentPart::Video => video_token,
        };
        if piece.is_empty() {
            continue;
        }
        let is_marker = markers.contains(&piece);
        if prev_is_marker && !is_marker && !piece.starts_with(char::is_whitespace) {
            out.push(' ');
        }
        out.push_str(piece);
        prev_is_marker = is_marker;
    }
    py_strip(&out).to_string()
}

/// Python's `str.capitalize` for the ASCII role names it is used on.
fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

/// Python's `str.strip()` with no argument: strips what `str.isspace()` accepts, which is
/// Rust's Unicode `White_Space` plus the ASCII separators U+001C..U+001F.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gemma_config() -> TokenizerConfig {
        let mut cfg = TokenizerConfig::default();
        cfg.named_tokens
            .insert("image_token".into(), "<|image|>".into());
        cfg
    }

    #[test]
    fn messages_serialize_like_mlx_vlm() {
        let json = serde_json::to_value([
            ChatMessage::system("S"),
            ChatMessage::user_with_images("Describe.", 2),
            ChatMessage::assistant("A"),
        ])
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"role": "system", "content": [{"type": "text", "text": "S", "content": "S"}]},
                {"role": "user", "content": [
                    {"type": "image"}, {"type": "image"},
                    {"type": "text", "text": "Describe.", "content": "Describe."}]},
                {"role": "assistant", "content": "A"}
            ])
        );
    }

    #[test]
    fn fallback_single_user_message_is_its_text() {
        let cfg = gemma_config();
        let got = plain_prompt(
            &[ChatMessage::user_with_images("What is this?", 1)],
            true,
            &cfg,
        );
        assert_eq!(got, "<|image|> What is this?");
        let got = plain_prompt(&[ChatMessage::text("user", "  hi  ")], true, &cfg);
        assert_eq!(got, "  hi  ", "a string body is passed through untouched");
        assert_eq!(plain_prompt(&[], true, &cfg), "");
    }

    #[test]
    fn fallback_conversation_uses_role_lines() {
        let cfg = TokenizerConfig::default();
        let messages = [
            ChatMessage::system("Be brief."),
            ChatMessage::user_with_images("Look", 1),
            ChatMessage::text("assistant", ""),
        ];
        assert_eq!(
            plain_prompt(&messages, true, &cfg),
            "System: Be brief.\nUser: <image> Look\nAssistant:\nAssistant:"
        );
        assert_eq!(
            plain_prompt(&messages[..2], false, &cfg),
            "System: Be brief.\nUser: <image> Look"
        );
    }
}
