//! Every prompt the tasks send. The notebook's are verbatim from the seed study (with its token
//! limits); the Moondream-shaped tasks (caption lengths, detect and point of a named thing) are
//! ours, worded in the notebook's style because Gemma has no task tokens: each says what it asks
//! for and is kept next to the answer format it expects.

/// Notebook, "Scene Understanding" (max_tokens 256).
pub const SCENE: &str =
    "Describe this image in 2-3 sentences. What is happening and what objects do you see?";
pub const SCENE_MAX_TOKENS: usize = 256;

/// Notebook, "Chart Analysis" (max_tokens 300), asked about its two-panel training chart.
pub const CHART: &str = "Analyze these two plots concisely:
1. Left: what does it show and at which epoch does overfitting begin?
2. Right: which model is best and by how much over the runner-up?";
pub const CHART_MAX_TOKENS: usize = 300;

/// Notebook, "Segmentation" (max_tokens 2048). Its target is "the main animal".
pub const SEGMENT_NOTEBOOK_TARGET: &str = "main animal";
pub const SEGMENT_MAX_TOKENS: usize = 2048;

/// The notebook's segmentation prompt for `target` (verbatim when `target` is "main animal").
pub fn segment(target: &str) -> String {
    format!(
        "Segment the {target} in this image.
Return JSON: {{\"polygon\": [[x1,y1], [x2,y2], ...], \"label\": \"...\"}}
Coordinates in [0, 1000] range. Use 20+ points.
Return ONLY valid JSON."
    )
}

/// Notebook, "VQA: VQAv2 Subset" (max_tokens 20).
pub fn vqa(question: &str) -> String {
    format!(
        "Answer this question about the image with a single short answer (1-3 words max).
Question: {question}
Answer:"
    )
}
pub const VQA_MAX_TOKENS: usize = 20;

/// Notebook, "COCO localization" (max_tokens 1024).
pub const COCO_DETECT: &str =
    "Detect the clearly visible medium-to-large objects in this image and return bounding boxes.
Return ONLY a JSON array — no explanation, no markdown.
Each element: {\"label\": \"<coco_class>\", \"box_2d\": [y_min, x_min, y_max, x_max]}
Coordinates are integers in [0, 1000] (normalized to image size).
Use only standard COCO class names.
Skip tiny distant instances; focus on objects with clear boundaries.";
pub const COCO_DETECT_MAX_TOKENS: usize = 1024;

/// Caption lengths, as Moondream's `caption(length=...)`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum CaptionLength {
    Short,
    Normal,
    Long,
}

/// A caption of the requested length.
pub fn caption(length: CaptionLength) -> &'static str {
    match length {
        CaptionLength::Short => "Write a short caption for this image: one sentence.",
        CaptionLength::Normal => "Describe this image.",
        CaptionLength::Long => "Describe this image in detail: the setting, every notable object and person, what they are doing, colors, and any text.",
    }
}

/// Token limit per caption length (Moondream's default limit is 768 for all of them).
pub fn caption_max_tokens(length: CaptionLength) -> usize {
    match length {
        CaptionLength::Short => 64,
        CaptionLength::Normal => 256,
        CaptionLength::Long => 768,
    }
}

/// Boxes around every instance of `object`, in the notebook's detection answer format.
pub fn detect(object: &str) -> String {
    format!(
        "Detect every {object} in this image and return bounding boxes.
Return ONLY a JSON array — no explanation, no markdown.
Each element: {{\"label\": \"{object}\", \"box_2d\": [y_min, x_min, y_max, x_max]}}
Coordinates are integers in [0, 1000] (normalized to image size).
Return [] if there is none."
    )
}

/// A point on every instance of `object`, `[y, x]` like `box_2d`.
pub fn point(object: &str) -> String {
    format!(
        "Point to every {object} in this image.
Return ONLY a JSON array — no explanation, no markdown.
Each element: {{\"label\": \"{object}\", \"point\": [y, x]}}
Coordinates are integers in [0, 1000] (normalized to image size).
Return [] if there is none."
    )
}

pub const DETECT_MAX_TOKENS: usize = 1024;
pub const POINT_MAX_TOKENS: usize = 512;
pub const QUERY_MAX_TOKENS: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notebook_prompts_are_verbatim() {
        assert_eq!(
            segment(SEGMENT_NOTEBOOK_TARGET),
            "Segment the main animal in this image.\nReturn JSON: {\"polygon\": [[x1,y1], [x2,y2], ...], \"label\": \"...\"}\nCoordinates in [0, 1000] range. Use 20+ points.\nReturn ONLY valid JSON."
        );
        assert_eq!(
            vqa("Where was this photo taken?"),
            "Answer this question about the image with a single short answer (1-3 words max).\nQuestion: Where was this photo taken?\nAnswer:"
        );
        assert!(COCO_DETECT.starts_with("Detect the clearly visible medium-to-large objects"));
        assert!(COCO_DETECT.ends_with("focus on objects with clear boundaries."));
    }
}
