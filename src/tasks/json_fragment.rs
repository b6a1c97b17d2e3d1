//! Finding the JSON inside a model's answer.
//!
//! Two readers: [`notebook_fragment`] is the notebook's `extract_json_fragment` exactly (evaluations
//! use it so their numbers compare with the study's), and [`find_json`] is the tolerant one the tasks
//! use: it skips prose and code fences, tries each plausible start, and when the answer was cut off
//! (the token limit) keeps every element that was complete.

use serde_json::Value;

/// Which bracket the notebook's regex looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonKind {
    Array,
    Object,
}

/// The notebook's `strip_code_fences`: trim, drop every ```` ``` ```` (with an optional `json` tag and
/// the whitespace after it).
pub fn strip_code_fences(text: &str) -> String {
    let text = text.trim();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("```") {
        out.push_str(&rest[..at]);
        rest = &rest[at + 3..];
        rest = rest.strip_prefix("json").unwrap_or(rest);
        rest = rest.trim_start();
    }
    out.push_str(rest);
    out
}

/// The notebook's `extract_json_fragment`: after stripping fences, the span from the first opening
/// bracket of `kind` to the last closing one (its greedy regex), or the whole cleaned text.
pub fn notebook_fragment(text: &str, kind: JsonKind) -> String {
    let cleaned = strip_code_fences(text);
    let (open, close) = match kind {
        JsonKind::Array => ('[', ']'),
        JsonKind::Object => ('{', '}'),
    };
    if let (Some(start), Some(end)) = (cleaned.find(open), cleaned.rfind(close)) {
        if end > start {
            return cleaned[start..=end].to_string();
        }
    }
    cleaned
}

/// The notebook's whole parse: the fragment, then a strict `json.loads`. `None` where the notebook's
/// `except` would have produced an empty result.
pub fn notebook_parse(text: &str, kind: JsonKind) -> Option<Value> {
    serde_json::from_str(&notebook_fragment(text, kind)).ok()
}

/// JSON found by the tolerant reader.
#[derive(Clone, Debug, PartialEq)]
pub struct FoundJson {
    pub value: Value,
    /// The answer was cut off and incomplete trailing elements were dropped.
    pub truncated: bool,
}

/// Why no JSON could be read from an answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("the answer holds no JSON (no '[' or '{{')")]
    NoJson,
    #[error("the answer's JSON is malformed: {0}")]
    Malformed(String),
}

/// How many opening brackets to try before giving up (prose can hold many; answers are short).
const MAX_STARTS: usize = 64;

/// The first JSON array or object in `text` that parses, tolerating prose around it, code fences
/// and truncation. A value cut off at the end keeps its complete elements and is marked `truncated`.
pub fn find_json(text: &str) -> Result<FoundJson, JsonError> {
    let cleaned = strip_code_fences(text);
    let mut first_error = None;
    let starts = cleaned
        .char_indices()
        .filter(|(_, c)| *c == '[' || *c == '{')
        .map(|(i, _)| i);
    for start in starts.take(MAX_STARTS) {
        let candidate = &cleaned[start..];
        let mut stream = serde_json::Deserializer::from_str(candidate).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) => {
                return Ok(FoundJson {
                    value,
                    truncated: false,
                })
            }
            Some(Err(e)) if e.is_eof() => {
                if let Some(value) =
                    close_truncated(candidate).and_then(|s| serde_json::from_str(&s).ok())
                {
                    return Ok(FoundJson {
                        value,
                        truncated: true,
                    });
                }
                first_error.get_or_insert_with(|| e.to_string());
            }
            Some(Err(e)) => {
                first_error.get_or_insert_with(|| e.to_string());
            }
            None => {}
        }
    }
    Err(first_error.map_or(JsonError::NoJson, JsonError::Malformed))
}

/// Cuts a truncated JSON text back to its last complete element and closes what is still open.
/// `None` when nothing complete remains.
///
/// Elements are kept whole: the text is only cut between the elements of an array of arrays or
/// objects, or between the pairs of the outermost object, never inside a box's or point's numbers
/// (`[5, 6` could have been `[5, 60, ...]`) nor inside one detection object.
fn close_truncated(text: &str) -> Option<String> {
    struct Open {
        closer: u8,
        holds_scalars: bool,
    }
    let closers = |stack: &[Open]| stack.iter().map(|o| o.closer).collect::<Vec<u8>>();
    let may_cut_in = |stack: &[Open]| match stack.last() {
        Some(top) if top.closer == b']' => !top.holds_scalars,
        Some(_) => stack.len() == 1,
        None => false,
    };
    let mut stack: Vec<Open> = Vec::new();
    let mut last_cut: Option<(usize, Vec<u8>)> = None;
    let mut in_string = false;
    let mut escaped = false;
    for (i, b) in text.bytes().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'[' | b'{' => {
                if stack.is_empty() {
                    // Cutting right after the outermost opening leaves an empty container.
                    last_cut = Some((i + 1, vec![closer(b)]));
                } else if may_cut_in(&stack) {
                    last_cut = Some((i, closers(&stack)));
                }
                stack.push(Open {
                    closer: closer(b),
                    holds_scalars: false,
                });
            }
            b']' | b'}' => {
                stack.pop();
                if stack.is_empty() {
                    return None; // complete: not a truncation, the caller's error stands
                }
                if may_cut_in(&stack) {
                    last_cut = Some((i + 1, closers(&stack)));
                }
            }
            b',' if may_cut_in(&stack) => last_cut = Some((i, closers(&stack))),
            b',' | b':' => {}
            c if c.is_ascii_whitespace() => {}
            _ => {
                if b == b'"' {
                    in_string = true;
                }
                if let Some(top) = stack.last_mut().filter(|top| top.closer == b']') {
                    top.holds_scalars = true;
                }
            }
        }
    }
    let (cut, open) = last_cut?;
    let mut repaired = text[..cut].trim_end().trim_end_matches(',').to_string();
    repaired.extend(open.iter().rev().map(|&c| c as char));
    Some(repaired)
}

fn closer(open: u8) -> u8 {
    if open == b'[' {
        b']'
    } else {
        b'}'
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strips_fences_like_the_notebook() {
        assert_eq!(strip_code_fences("```json\n[1, 2]\n```"), "[1, 2]\n");
        assert_eq!(strip_code_fences("  ```\n{}```  "), "{}");
    }

    #[test]
    fn notebook_fragment_spans_first_open_to_last_close() {
        let text = "Here: [1, 2] and [3]. Done";
        assert_eq!(notebook_fragment(text, JsonKind::Array), "[1, 2] and [3]");
        // The notebook then fails json.loads on that span: an empty result, as in the study.
        assert_eq!(notebook_parse(text, JsonKind::Array), None);
        assert_eq!(notebook_fragment("no json", JsonKind::Object), "no json");
        assert_eq!(
            notebook_parse("```json\n{\"a\": 1}\n```", JsonKind::Object),
            Some(json!({"a": 1}))
        );
    }

    #[test]
    fn finds_json_after_prose_and_ignores_trailing_text() {
        let found =
            find_json("Sure! The boxes are:\n[{\"label\": \"cat\"}]\nHope this helps [smile].")
                .unwrap();
        assert_eq!(found.value, json!([{"label": "cat"}]));
        assert!(!found.truncated);
    }

    #[test]
    fn skips_bracketed_prose_that_is_not_json() {
        let found = find_json("Format [y_min, x_min, y_max, x_max]: [[1, 2, 3, 4]]").unwrap();
        assert_eq!(found.value, json!([[1, 2, 3, 4]]));
    }

    #[test]
    fn truncated_array_keeps_complete_elements() {
        let text = r#"[{"label": "dog", "box_2d": [1, 2, 3, 4]}, {"label": "cat", "box_2d": [5, 6"#;
        let found = find_json(text).unwrap();
        assert_eq!(
            found.value,
            json!([{"label": "dog", "box_2d": [1, 2, 3, 4]}])
        );
        assert!(found.truncated);
    }

    #[test]
    fn truncated_polygon_keeps_complete_points() {
        let found = find_json(r#"{"polygon": [[100, 100], [160, 140], [23"#).unwrap();
        assert_eq!(found.value, json!({"polygon": [[100, 100], [160, 140]]}));
        assert!(found.truncated);
    }

    #[test]
    fn truncated_inside_a_string_drops_that_element() {
        let found = find_json(r#"[{"label": "a"}, {"label": "unfini"#).unwrap();
        assert_eq!(found.value, json!([{"label": "a"}]));
    }

    #[test]
    fn no_json_and_malformed_json_are_typed_errors() {
        assert_eq!(
            find_json("I cannot see any objects."),
            Err(JsonError::NoJson)
        );
        assert!(matches!(
            find_json("[1, 2,, 3]"),
            Err(JsonError::Malformed(_))
        ));
        assert!(matches!(
            find_json("{\"a\": }"),
            Err(JsonError::Malformed(_))
        ));
    }

    #[test]
    fn an_answer_cut_before_its_first_element_is_an_empty_truncated_list() {
        assert_eq!(
            find_json("[").unwrap(),
            FoundJson {
                value: json!([]),
                truncated: true
            }
        );
        assert_eq!(
            find_json("[{\"label\": \"a").unwrap(),
            FoundJson {
                value: json!([]),
                truncated: true
            }
        );
    }

    #[test]
    fn a_detection_cut_inside_its_box_or_label_is_dropped_whole() {
        let found =
            find_json(r#"[{"label": "a", "box_2d": [1, 2, 3, 4]}, {"label": "b", "box_2d": [5"#)
                .unwrap();
        assert_eq!(found.value, json!([{"label": "a", "box_2d": [1, 2, 3, 4]}]));
        let found =
            find_json(r#"{"objects": [{"label": "a", "box_2d": [1, 2, 3, 4]}, {"label": "b", "#)
                .unwrap();
        assert_eq!(
            found.value,
            json!({"objects": [{"label": "a", "box_2d": [1, 2, 3, 4]}]})
        );
        let found = find_json(r#"{"polygon": [[1, 2], [3, 4]], "label": "do"#).unwrap();
        assert_eq!(found.value, json!({"polygon": [[1, 2], [3, 4]]}));
    }
}
