//! The checkpoint's Jinja chat template, rendered with minijinja the way transformers'
//! `apply_chat_template` renders it (as mlx-vlm 0.7.10 calls it for a prompt).
//!
//! transformers compiles templates in a sandboxed Jinja2 environment with `trim_blocks`,
//! `lstrip_blocks`, the loop-controls extension and the globals `raise_exception`, `namespace`
//! and `dict`; the render context holds `messages`, `tools` and `documents` (both `None`),
//! `add_generation_prompt`, every named special token of the tokenizer (`bos_token`,
//! `image_token`, ...) and the caller's keyword arguments, of which mlx-vlm always sends
//! `enable_thinking=False`. Python string methods (`.startswith`, `.strip`, ...) come from
//! minijinja-contrib's pycompat layer, and `trim` follows Python's `str.strip`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::value::{Serde, Value};
use minijinja::{Environment, Error, ErrorKind};

use crate::chat_messages::{plain_prompt, py_strip, ChatMessage};
use crate::tokenizer_config::{TokenizerConfig, TOKENIZER_CONFIG_FILE};

pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";
/// Processor-level template file of some checkpoints: `{"chat_template": "..."}`.
pub const CHAT_TEMPLATE_JSON_FILE: &str = "chat_template.json";
const TEMPLATE_NAME: &str = "chat_template";

#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    #[error("cannot read chat template {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    BadFile { path: PathBuf, problem: String },
    #[error("chat template from {origin} does not compile: {message}")]
    Syntax { origin: String, message: String },
    #[error("chat template from {origin} failed to render: {message}")]
    Render { origin: String, message: String },
}

/// Options of one render, mirroring the keyword arguments mlx-vlm passes.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Append the model turn header (mlx-vlm: always true for prompts).
    pub add_generation_prompt: bool,
    /// `enable_thinking` template variable; mlx-vlm sends `Some(false)` unless told otherwise.
    pub enable_thinking: Option<bool>,
    /// Further template variables (they override special tokens of the same name, as in HF).
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            add_generation_prompt: true,
            enable_thinking: Some(false),
            extra: BTreeMap::new(),
        }
    }
}

/// A compiled chat template plus the special-token variables it is rendered with.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    origin: String,
    special_tokens: BTreeMap<String, String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("special_tokens", &self.special_tokens)
            .finish()
    }
}

impl ChatTemplate {
    /// Finds the checkpoint's template: `chat_template.jinja`, else `chat_template.json`, else
    /// `chat_template` in tokenizer_config.json. `Ok(None)` when there is none (mlx-vlm then
    /// falls back to a plain prompt, see [`plain_prompt`]).
    pub fn load(dir: &Path, config: &TokenizerConfig) -> Result<Option<Self>, ChatTemplateError> {
        let jinja = dir.join(CHAT_TEMPLATE_FILE);
        if jinja.exists() {
            let source = read(&jinja)?;
            return Self::new(source, jinja.display().to_string(), config).map(Some);
        }
        let json_path = dir.join(CHAT_TEMPLATE_JSON_FILE);
        if json_path.exists() {
            let source = template_from_json_file(&json_path)?;
            return Self::new(source, json_path.display().to_string(), config).map(Some);
        }
        match &config.chat_template {
            Some(source) => {
                let origin = match &config.path {
                    Some(p) => format!("{}:chat_template", p.display()),
                    None => format!("{TOKENIZER_CONFIG_FILE}:chat_template"),
                };
                Self::new(source.clone(), origin, config).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Compiles `source`; `origin` names it in errors. Special tokens come from `config`.
    pub fn new(
        source: String,
        origin: String,
        config: &TokenizerConfig,
    ) -> Result<Self, ChatTemplateError> {
        let syntax_error = |e: Error| ChatTemplateError::Syntax {
            origin: origin.clone(),
            message: describe(&e),
        };
        let mut env = hf_environment().map_err(syntax_error)?;
        env.add_template_owned(TEMPLATE_NAME, source.clone())
            .map_err(syntax_error)?;
        Ok(Self {
            env,
            source,
            origin,
            special_tokens: config.named_tokens.clone(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Renders the conversation to the prompt string.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        options: &RenderOptions,
    ) -> Result<String, ChatTemplateError> {
        let render_error = |e: Error| ChatTemplateError::Render {
            origin: self.origin.clone(),
            message: describe(&e),
        };
        let mut ctx: BTreeMap<String, Value> = self
            .special_tokens
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        if let Some(thinking) = options.enable_thinking {
            ctx.insert("enable_thinking".into(), Value::from(thinking));
        }
        for (k, v) in &options.extra {
            ctx.insert(k.clone(), Value::from(Serde(v)));
        }
        ctx.insert("messages".into(), Value::from(Serde(messages)));
        // HF passes both explicitly, so `tools is defined` holds even without tools.
        ctx.insert("tools".into(), Value::from(()));
        ctx.insert("documents".into(), Value::from(()));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(options.add_generation_prompt),
        );
        let template = self.env.get_template(TEMPLATE_NAME).map_err(render_error)?;
        template.render(ctx).map_err(render_error)
    }
}

fn read(path: &Path) -> Result<String, ChatTemplateError> {
    std::fs::read_to_string(path).map_err(|source| ChatTemplateError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn template_from_json_file(path: &Path) -> Result<String, ChatTemplateError> {
    let bad = |problem: String| ChatTemplateError::BadFile {
        path: path.to_path_buf(),
        problem,
    };
    let json: serde_json::Value =
        serde_json::from_str(&read(path)?).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    json.get("chat_template")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| bad("field `chat_template` must be a string".into()))
}

/// minijinja's message plus the template line it points at.
fn describe(e: &Error) -> String {
    let mut message = e.to_string();
    if let Some(detail) = e.detail() {
        if !message.contains(detail) {
            message = format!("{message}: {detail}");
        }
    }
    message
}

/// The environment transformers' `_compile_jinja_template` sets up, in minijinja terms.
fn hf_environment() -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()?,
    );
    // Jinja2 escapes nothing unless asked; HF never asks.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_filter("trim", py_trim);
    Ok(env)
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// Jinja2's `trim`: Python `str.strip(chars)` of the value's string form.
fn py_trim(value: Value, chars: Option<String>) -> String {
    let text = match value.as_str() {
        Some(s) => s.to_string(),
        None => value.to_string(),
    };
    match chars {
        Some(chars) => text.trim_matches(|c| chars.contains(c)).to_string(),
        None => py_strip(&text).to_string(),
    }
}

/// The prompt string and how to tokenize it.
#[derive(Debug, Clone, PartialEq)]
pub struct FormattedPrompt {
    pub text: String,
    /// mlx-vlm tokenizes a templated Gemma prompt with `add_special_tokens=False` (the template
    /// writes `<bos>`), and the plain fallback with `add_special_tokens=True`.
    pub add_special_tokens: bool,
}

/// Renders `messages` with the checkpoint's template, or with mlx-vlm's plain fallback when the
/// checkpoint has none.
pub fn format_prompt(
    template: Option<&ChatTemplate>,
    config: &TokenizerConfig,
    messages: &[ChatMessage],
    options: &RenderOptions,
) -> Result<FormattedPrompt, ChatTemplateError> {
    Ok(match template {
        Some(t) => FormattedPrompt {
            text: t.render(messages, options)?,
            add_special_tokens: false,
        },
        None => FormattedPrompt {
            text: plain_prompt(messages, options.add_generation_prompt, config),
            add_special_tokens: true,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat_messages::{ChatMessage, ContentPart, MessageContent};
    use crate::tiny_tokenizer::TINY_CHAT_TEMPLATE;

    /// Verbatim copy of shared/design/reference-scripts/gemma4_chat_template.jinja, the compact
    /// template the Python reference scripts use.
    const SHARED_TEMPLATE: &str = include_str!("../testdata/gemma4_chat_template.jinja");

    fn gemma_config() -> TokenizerConfig {
        let mut cfg = TokenizerConfig::default();
        for (k, v) in [
            ("bos_token", "<bos>"),
            ("eos_token", "<eos>"),
            ("image_token", "<|image|>"),
        ] {
            cfg.named_tokens.insert(k.into(), v.into());
        }
        cfg
    }

    fn render(source: &str, messages: &[ChatMessage], options: &RenderOptions) -> String {
        ChatTemplate::new(source.into(), "test".into(), &gemma_config())
            .unwrap()
            .render(messages, options)
            .unwrap()
    }

    fn both_templates(messages: &[ChatMessage]) -> String {
        let shared = render(SHARED_TEMPLATE, messages, &RenderOptions::default());
        let tiny = render(TINY_CHAT_TEMPLATE, messages, &RenderOptions::default());
        assert_eq!(
            shared, tiny,
            "the tiny template must render like the shared one"
        );
        shared
    }

    #[test]
    fn text_prompt_matches_spec() {
        // mlx-vlm sends a Gemma 4 text prompt as a one-part list; a plain string renders the same.
        let expected =
            "<bos><|turn>user\nHello<turn|>\n<|turn>model\n<|channel>thought\n<channel|>";
        assert_eq!(
            both_templates(&[ChatMessage::user_with_images("Hello", 0)]),
            expected
        );
        assert_eq!(
            both_templates(&[ChatMessage::text("user", "Hello")]),
            expected
        );
    }

    #[test]
    fn one_image_prompt_matches_spec() {
        let got = both_templates(&[ChatMessage::user_with_images("Describe this image.", 1)]);
        assert_eq!(
            got,
            "<bos><|turn>user\n\n\n<|image|>\n\nDescribe this image.<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"
        );
    }

    #[test]
    fn two_images_come_first_in_order() {
        let got = both_templates(&[ChatMessage::user_with_images("Compare them.", 2)]);
        assert_eq!(
            got,
            "<bos><|turn>user\n\n\n<|image|>\n\n\n\n<|image|>\n\nCompare them.<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"
        );
    }

    #[test]
    fn system_message_gets_its_own_turn_and_text_is_trimmed() {
        let messages = [
            ChatMessage::text("system", "  Be brief.\n"),
            ChatMessage::user_with_images("  Hi there  ", 0),
        ];
        let expected = "<bos><|turn>system\nBe brief.<turn|>\n<|turn>user\nHi there<turn|>\n<|turn>model\n<|channel>thought\n<channel|>";
        assert_eq!(both_templates(&messages), expected);
        // mlx-vlm's list-shaped system message: only the tiny template reads lists there.
        let listed = [ChatMessage::system("  Be brief.\n"), messages[1].clone()];
        assert_eq!(
            render(TINY_CHAT_TEMPLATE, &listed, &RenderOptions::default()),
            expected
        );
    }

    #[test]
    fn assistant_turn_and_thinking_switch() {
        let messages = [
            ChatMessage::text("user", "Hi"),
            ChatMessage::text("assistant", "Hello!"),
            ChatMessage::text("user", "Bye"),
        ];
        let thinking = RenderOptions {
            enable_thinking: Some(true),
            ..RenderOptions::default()
        };
        assert_eq!(
            render(SHARED_TEMPLATE, &messages, &thinking),
            "<bos><|turn>system\n<|think|><turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\nHello!<turn|>\n<|turn>user\nBye<turn|>\n<|turn>model\n"
        );
        let no_prompt = RenderOptions {
            add_generation_prompt: false,
            ..RenderOptions::default()
        };
        assert_eq!(
            render(SHARED_TEMPLATE, &messages[..1], &no_prompt),
            "<bos><|turn>user\nHi<turn|>\n"
        );
    }

    #[test]
    fn audio_and_video_parts() {
        let msg = ChatMessage {
            role: "user".into(),
            content: MessageContent::Parts(vec![
                ContentPart::Video,
                ContentPart::Audio,
                ContentPart::Text("What happens?".into()),
            ]),
        };
        assert_eq!(
            both_templates(&[msg]),
            "<bos><|turn>user\n\n\n<|video|>\n\n<|audio|>What happens?<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"
        );
    }

    #[test]
    fn hf_environment_features() {
        let src = "{%- for m in messages -%}{%- if loop.index > 1 -%}{%- break -%}{%- endif -%}\
                   {{ m['content'].strip().upper() }}|{{ m['content'].startswith(' a') }}\
                   {%- endfor -%}|{{ tools is defined }}|{{ tools is none }}|{{ image_token }}|{{ '\u{1f} x\u{a0}' | trim }}\n";
        let messages = [
            ChatMessage::text("user", " ab "),
            ChatMessage::text("user", "cd"),
        ];
        // Booleans print as in Python; the single trailing newline is dropped, as Jinja2 does.
        assert_eq!(
            render(src, &messages, &RenderOptions::default()),
            "AB|True|True|True|<|image|>|x"
        );
    }

    #[test]
    fn extra_variables_override_special_tokens() {
        let mut options = RenderOptions::default();
        options
            .extra
            .insert("bos_token".into(), serde_json::json!("[B]"));
        assert_eq!(render("{{ bos_token }}", &[], &options), "[B]");
    }

    #[test]
    fn errors_name_the_template_origin() {
        let err = ChatTemplate::new(
            "{% if %}".into(),
            "dir/chat_template.jinja".into(),
            &gemma_config(),
        )
        .unwrap_err();
        assert!(matches!(err, ChatTemplateError::Syntax { .. }));
        assert!(err.to_string().contains("dir/chat_template.jinja"), "{err}");

        let t = ChatTemplate::new(
            "{{ raise_exception('System role not supported') }}".into(),
            "dir/chat_template.jinja".into(),
            &gemma_config(),
        )
        .unwrap();
        let err = t.render(&[], &RenderOptions::default()).unwrap_err();
        assert!(matches!(err, ChatTemplateError::Render { .. }));
        let text = err.to_string();
        assert!(
            text.contains("System role not supported") && text.contains("dir/chat_template.jinja"),
            "{text}"
        );
    }

    #[test]
    fn load_prefers_jinja_file_then_json_then_config() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = gemma_config();
        assert!(ChatTemplate::load(dir.path(), &cfg).unwrap().is_none());

        cfg.chat_template = Some("from config".into());
        let t = ChatTemplate::load(dir.path(), &cfg).unwrap().unwrap();
        assert_eq!(
            t.render(&[], &RenderOptions::default()).unwrap(),
            "from config"
        );

        std::fs::write(
            dir.path().join(CHAT_TEMPLATE_JSON_FILE),
            r#"{"chat_template": "from json"}"#,
        )
        .unwrap();
        let t = ChatTemplate::load(dir.path(), &cfg).unwrap().unwrap();
        assert_eq!(
            t.render(&[], &RenderOptions::default()).unwrap(),
            "from json"
        );

        std::fs::write(dir.path().join(CHAT_TEMPLATE_FILE), "from jinja").unwrap();
        let t = ChatTemplate::load(dir.path(), &cfg).unwrap().unwrap();
        assert_eq!(
            t.render(&[], &RenderOptions::default()).unwrap(),
            "from jinja"
        );

        std::fs::remove_file(dir.path().join(CHAT_TEMPLATE_FILE)).unwrap();
        std::fs::write(
            dir.path().join(CHAT_TEMPLATE_JSON_FILE),
            r#"{"template": 1}"#,
        )
        .unwrap();
        let err = ChatTemplate::load(dir.path(), &cfg).unwrap_err();
        assert!(err.to_string().contains("chat_template.json"), "{err}");
    }

    #[test]
    fn format_prompt_picks_template_or_fallback() {
        let cfg = gemma_config();
        let messages = [ChatMessage::user_with_images("Hi", 0)];
        let plain = format_prompt(None, &cfg, &messages, &RenderOptions::default()).unwrap();
        assert_eq!(
            plain,
            FormattedPrompt {
                text: "Hi".into(),
                add_special_tokens: true
            }
        );
        let t = ChatTemplate::new(
            "<bos>{{ messages[0]['content'][0]['text'] }}".into(),
            "t".into(),
            &cfg,
        )
        .unwrap();
        let templated =
            format_prompt(Some(&t), &cfg, &messages, &RenderOptions::default()).unwrap();
        assert_eq!(
            templated,
            FormattedPrompt {
                text: "<bos>Hi".into(),
                add_special_tokens: false
            }
        );
    }
}
