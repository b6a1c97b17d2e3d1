//! Label normalization with the notebook's alias table (common VLM outputs -> COCO names).

/// The notebook's `COCO_NAME_ALIASES`, verbatim (its duplicate keys keep their single value).
const COCO_NAME_ALIASES: &[(&str, &str)] = &[
    ("tv monitor", "tv"),
    ("tvmonitor", "tv"),
    ("television", "tv"),
    ("monitor", "tv"),
    ("mobile phone", "cell phone"),
    ("cellphone", "cell phone"),
    ("phone", "cell phone"),
    ("smartphone", "cell phone"),
    ("iphone", "cell phone"),
    ("sofa", "couch"),
    ("loveseat", "couch"),
    ("diningtable", "dining table"),
    ("table", "dining table"),
    ("desk", "dining table"),
    ("pottedplant", "potted plant"),
    ("houseplant", "potted plant"),
    ("plant", "potted plant"),
    ("aeroplane", "airplane"),
    ("plane", "airplane"),
    ("jet", "airplane"),
    ("motorbike", "motorcycle"),
    ("scooter", "motorcycle"),
    ("couch", "couch"),
    ("wine", "wine glass"),
    ("glass", "wine glass"),
    ("laptop computer", "laptop"),
    ("notebook", "laptop"),
    ("bicycle", "bicycle"),
    ("bike", "bicycle"),
    ("teddy", "teddy bear"),
    ("stuffed bear", "teddy bear"),
    ("plush bear", "teddy bear"),
    ("traffic signal", "traffic light"),
    ("signal", "traffic light"),
    ("automobile", "car"),
    ("vehicle", "car"),
    ("human", "person"),
    ("man", "person"),
    ("woman", "person"),
    ("child", "person"),
    ("boy", "person"),
    ("girl", "person"),
    ("people", "person"),
    ("pedestrian", "person"),
];

/// The notebook's `normalize_label`: trim, lowercase, runs of `_`/`-` become one space, runs of
/// whitespace become one space, then the alias table.
pub fn normalize_label(label: &str) -> String {
    let lowered = label.trim().to_lowercase();
    let mut out = String::with_capacity(lowered.len());
    let mut chars = lowered.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '_' || c == '-' {
            while matches!(chars.peek(), Some('_' | '-')) {
                chars.next();
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    // Python's `\s+` -> ' ' (no second trim: the notebook does not strip after replacing).
    let mut collapsed = String::with_capacity(out.len());
    let mut in_space = false;
    for c in out.chars() {
        if c.is_whitespace() {
            if !in_space {
                collapsed.push(' ');
            }
            in_space = true;
        } else {
            collapsed.push(c);
            in_space = false;
        }
    }
    match COCO_NAME_ALIASES
        .iter()
        .find(|(alias, _)| *alias == collapsed)
    {
        Some((_, canonical)) => (*canonical).to_string(),
        None => collapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_label;

    #[test]
    fn aliases_map_to_coco_names() {
        assert_eq!(normalize_label("TV Monitor"), "tv");
        assert_eq!(normalize_label("  Man "), "person");
        assert_eq!(normalize_label("dining_table"), "dining table");
        assert_eq!(normalize_label("potted--plant"), "potted plant");
        assert_eq!(normalize_label("Mobile_Phone"), "cell phone");
    }

    #[test]
    fn unknown_labels_are_only_cleaned() {
        assert_eq!(normalize_label("Tennis   Racket"), "tennis racket");
        assert_eq!(normalize_label("giraffe"), "giraffe");
    }

    #[test]
    fn separators_at_the_edges_survive_as_spaces_like_the_notebook() {
        // re.sub(r'[_-]+', ' ', 'cat_') == 'cat ' and the notebook never strips again.
        assert_eq!(normalize_label("cat_"), "cat ");
    }
}
