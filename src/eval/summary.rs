//! Aggregates over a run, as the notebook prints them: means of per-image numbers (`od_summary`),
//! status totals, per-class coarse recall (top 10 classes by ground-truth count) and the best and
//! worst images by coarse F1; and the VQA accuracy.

use serde::{Deserialize, Serialize};

use super::detection::Detection;
use super::matching::ImageEval;
use super::numpy_stats::{argmax, argmin, mean};

/// One image's inputs to the summary: its evaluation and its ground truth (for class names).
pub struct ScoredImage<'a> {
    pub eval: &'a ImageEval,
    pub ground_truth: &'a [Detection],
    pub time_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassRecall {
    pub name: String,
    pub matched: usize,
    pub total: usize,
    pub recall: f64,
}

/// The notebook's `od_summary`, `status_totals`, per-class recall and best/worst.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CocoSummary {
    pub n_images: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub strict_precision: f64,
    pub strict_recall: f64,
    pub strict_f1: f64,
    pub mean_tp_iou: f64,
    pub total_tp: usize,
    pub total_pred: usize,
    pub total_gt: usize,
    pub avg_time_s: f64,
    /// tp, near, class, fp.
    pub status_totals: [usize; 4],
    /// Top 10 ground-truth classes by count (first seen first among equal counts), coarse recall.
    pub per_class_recall: Vec<ClassRecall>,
    /// Index (in sample order) of the best and worst image by coarse F1 (numpy argmax/argmin).
    pub best_index: Option<usize>,
    pub worst_index: Option<usize>,
}

pub fn coco_summary(images: &[ScoredImage]) -> CocoSummary {
    let field = |f: fn(&ImageEval) -> f64| -> f64 {
        mean(&images.iter().map(|i| f(i.eval)).collect::<Vec<_>>())
    };
    let mut status_totals = [0usize; 4];
    for i in images {
        for (t, c) in status_totals.iter_mut().zip(i.eval.status_counts) {
            *t += c;
        }
    }
    let f1s: Vec<f64> = images.iter().map(|i| i.eval.f1).collect();
    CocoSummary {
        n_images: images.len(),
        precision: field(|e| e.precision),
        recall: field(|e| e.recall),
        f1: field(|e| e.f1),
        strict_precision: field(|e| e.strict_precision),
        strict_recall: field(|e| e.strict_recall),
        strict_f1: field(|e| e.strict_f1),
        mean_tp_iou: field(|e| e.mean_tp_iou),
        total_tp: images.iter().map(|i| i.eval.tp).sum(),
        total_pred: images.iter().map(|i| i.eval.n_pred).sum(),
        total_gt: images.iter().map(|i| i.eval.n_gt).sum(),
        avg_time_s: mean(&images.iter().map(|i| i.time_s).collect::<Vec<_>>()),
        status_totals,
        per_class_recall: per_class_recall(images),
        best_index: argmax(&f1s),
        worst_index: argmin(&f1s),
    }
}

/// `Counter.most_common(10)` of ground-truth names, with the coarse matches of each.
fn per_class_recall(images: &[ScoredImage]) -> Vec<ClassRecall> {
    // Insertion-ordered counts, like Counter.
    let mut counts: Vec<(String, usize, usize)> = Vec::new();
    let mut bump = |name: &str, gt: usize, tp: usize| match counts.iter_mut().find(|c| c.0 == name)
    {
        Some(c) => {
            c.1 += gt;
            c.2 += tp;
        }
        None => counts.push((name.to_string(), gt, tp)),
    };
    for image in images {
        for d in image.ground_truth {
            bump(&d.class_name, 1, 0);
        }
        for &g in &image.eval.matched_gt_indices {
            bump(&image.ground_truth[g].class_name, 0, 1);
        }
    }
    // most_common sorts by count only and is stable; classes never seen in ground truth have count 0.
    let mut ranked: Vec<_> = counts.into_iter().filter(|c| c.1 > 0).collect();
    ranked.sort_by_key(|c| std::cmp::Reverse(c.1));
    ranked
        .into_iter()
        .take(10)
        .map(|(name, total, matched)| ClassRecall {
            name,
            matched,
            total,
            recall: matched as f64 / total as f64,
        })
        .collect()
}

/// The notebook's `vqa_exact_match`: trim, lowercase, drop trailing periods, trim again.
pub fn vqa_exact_match(prediction: &str, ground_truth: &str) -> f64 {
    fn norm(s: &str) -> String {
        // Python's str.lower() and strip(); rstrip('.') removes every trailing period.
        s.trim()
            .to_lowercase()
            .trim_end_matches('.')
            .trim()
            .to_string()
    }
    if norm(prediction) == norm(ground_truth) {
        1.0
    } else {
        0.0
    }
}

/// The notebook's prediction from a VQA answer: `response.strip().split('\n')[0]`.
pub fn vqa_prediction(response: &str) -> String {
    response.trim().split('\n').next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_ignores_case_edges_and_trailing_periods_only() {
        assert_eq!(vqa_exact_match("La Brea Ave.", "la brea ave"), 1.0);
        assert_eq!(vqa_exact_match("  Yes.. ", "yes"), 1.0);
        assert_eq!(vqa_exact_match("3 people", "3"), 0.0);
        assert_eq!(vqa_exact_match("Two", "2"), 0.0);
    }

    #[test]
    fn prediction_is_the_first_line_of_the_stripped_answer() {
        assert_eq!(vqa_prediction("\n  Bus\nbecause..."), "Bus");
        assert_eq!(vqa_prediction(""), "");
    }
}
