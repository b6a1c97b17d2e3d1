//! The notebook's class-aware localization metric (`greedy_match`, `summarize_matches`,
//! `evaluate_detections`): greedy one-to-one matching of same-class pairs by descending IoU, at a
//! coarse (0.3) and a strict (0.5) threshold, and a status for every prediction.
//!
//! Numbers follow the notebook's arrays: IoU computed in float64 from float32 corners and stored as
//! float32 (supervision's `box_iou_batch`), thresholds compared in float32 (numpy 2 casts the Python
//! float to the array's dtype), ties ordered by numpy's argsort ([`super::argsort`]).

use serde::{Deserialize, Serialize};

use super::argsort::argsort;
use super::detection::Detection;
use super::numpy_stats::mean;

pub const COARSE_IOU: f64 = 0.3;
pub const STRICT_IOU: f64 = 0.5;

/// What became of one prediction, in the notebook's precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Matched at the strict threshold.
    Tp,
    /// A same-class ground-truth box overlaps by at least the coarse threshold.
    Near,
    /// Overlaps a box of another class by at least the strict threshold.
    Class,
    /// No usable match.
    Fp,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Tp, Status::Near, Status::Class, Status::Fp];

    pub fn key(self) -> &'static str {
        match self {
            Status::Tp => "tp",
            Status::Near => "near",
            Status::Class => "class",
            Status::Fp => "fp",
        }
    }
}

/// One match: ground-truth index, prediction index, IoU.
pub type Match = (usize, usize, f32);

/// IoU of every (ground truth, prediction) pair, row-major `[n_gt][n_pred]`, as supervision computes it.
pub fn iou_matrix(targets: &[Detection], predictions: &[Detection]) -> Vec<Vec<f32>> {
    targets
        .iter()
        .map(|gt| {
            predictions
                .iter()
                // supervision divides only where the union is positive; a NaN corner makes it NaN: 0.
                .map(|p| {
                    if gt.has_nan() || p.has_nan() {
                        0.0
                    } else {
                        gt.pixels().iou(p.pixels()) as f32
                    }
                })
                .collect()
        })
        .collect()
}

/// `greedy_match`: pairs at or above `threshold`, taken by descending score (numpy's argsort
/// reversed), each ground truth and prediction used once.
pub fn greedy_match(matrix: &[Vec<f32>], threshold: f64) -> Vec<Match> {
    let threshold = threshold as f32;
    // np.where: row-major order.
    let candidates: Vec<(usize, usize, f32)> = matrix
        .iter()
        .enumerate()
        .flat_map(|(g, row)| {
            row.iter()
                .enumerate()
                .filter(|(_, &s)| s >= threshold)
                .map(move |(p, &s)| (g, p, s))
        })
        .collect();
    let scores: Vec<f32> = candidates.iter().map(|c| c.2).collect();
    let (mut used_gt, mut used_pred) = (Vec::new(), Vec::new());
    let mut matches = Vec::new();
    for k in argsort(&scores).into_iter().rev() {
        let (g, p, s) = candidates[k];
        if used_gt.contains(&g) || used_pred.contains(&p) {
            continue;
        }
        used_gt.push(g);
        used_pred.push(p);
        matches.push((g, p, s));
    }
    matches
}

/// `summarize_matches`.
#[derive(Clone, Debug, PartialEq)]
pub struct MatchSummary {
    pub tp: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Matched ground-truth indices, ascending.
    pub gt_indices: Vec<usize>,
    pub mean_iou: f64,
}

pub fn summarize_matches(matches: &[Match], n_pred: usize, n_gt: usize) -> MatchSummary {
    let tp = matches.len();
    let precision = if n_pred > 0 {
        tp as f64 / n_pred as f64
    } else {
        0.0
    };
    let recall = if n_gt > 0 {
        tp as f64 / n_gt as f64
    } else {
        0.0
    };
    let f1 = if precision + recall != 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    let mut gt_indices: Vec<usize> = matches.iter().map(|m| m.0).collect();
    gt_indices.sort_unstable();
    let ious: Vec<f64> = matches.iter().map(|m| f64::from(m.2)).collect();
    let mean_iou = if ious.is_empty() { 0.0 } else { mean(&ious) };
    MatchSummary {
        tp,
        precision,
        recall,
        f1,
        gt_indices,
        mean_iou,
    }
}

/// `evaluate_detections` for one image: the notebook's dictionary, field for field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageEval {
    /// Coarse (IoU >= 0.3) true positives.
    pub tp: usize,
    pub n_pred: usize,
    pub n_gt: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub strict_precision: f64,
    pub strict_recall: f64,
    pub strict_f1: f64,
    /// Mean IoU of the strict matches (0 without any).
    pub mean_tp_iou: f64,
    pub strict_tp_mask: Vec<bool>,
    /// Per prediction: its strict match's IoU, else 0.
    pub tp_ious: Vec<f32>,
    pub pred_status: Vec<Status>,
    pub pred_display_labels: Vec<String>,
    pub matched_gt_indices: Vec<usize>,
    pub strict_matched_gt_indices: Vec<usize>,
    /// Counts of tp, near, class, fp (in that order).
    pub status_counts: [usize; 4],
}

/// Python's `f'{x:.2f}'` (round half to even on the exact binary value, like Rust's formatting).
fn two_decimals(x: f64) -> String {
    format!("{x:.2}")
}

pub fn evaluate(predictions: &[Detection], targets: &[Detection]) -> ImageEval {
    let (n_pred, n_gt) = (predictions.len(), targets.len());
    let pair_ious = if n_pred > 0 && n_gt > 0 {
        iou_matrix(targets, predictions)
    } else {
        vec![vec![0.0; n_pred]; n_gt]
    };
    let class_match: Vec<Vec<bool>> = targets
        .iter()
        .map(|gt| {
            predictions
                .iter()
                .map(|p| n_pred > 0 && n_gt > 0 && gt.class_id == p.class_id)
                .collect()
        })
        .collect();
    let same_class_ious: Vec<Vec<f32>> = pair_ious
        .iter()
        .zip(&class_match)
        .map(|(row, same)| {
            row.iter()
                .zip(same)
                .map(|(&iou, &s)| if s { iou } else { -1.0 })
                .collect()
        })
        .collect();

    let strict_matches = greedy_match(&same_class_ious, STRICT_IOU);
    let coarse_matches = greedy_match(&same_class_ious, COARSE_IOU);
    let strict = summarize_matches(&strict_matches, n_pred, n_gt);
    let coarse = summarize_matches(&coarse_matches, n_pred, n_gt);

    let mut strict_tp_mask = vec![false; n_pred];
    let mut tp_ious = vec![0.0f32; n_pred];
    for &(_, p, iou) in &strict_matches {
        strict_tp_mask[p] = true;
        tp_ious[p] = iou;
    }

    // Per prediction: the best IoU with any ground truth (first such row, as argmax), and with a
    // ground truth of its own class.
    let mut best_same_iou = vec![0.0f32; n_pred];
    let mut best_any_iou = vec![0.0f32; n_pred];
    let mut best_any_gt: Vec<Option<usize>> = vec![None; n_pred];
    if n_pred > 0 && n_gt > 0 {
        for p in 0..n_pred {
            let column: Vec<f32> = pair_ious.iter().map(|row| row[p]).collect();
            let g = first_argmax_f32(&column);
            best_any_gt[p] = Some(g);
            best_any_iou[p] = column[g];
            if class_match.iter().any(|row| row[p]) {
                let same: Vec<f32> = same_class_ious.iter().map(|row| row[p]).collect();
                best_same_iou[p] = same[first_argmax_f32(&same)];
            }
        }
    }

    let (coarse_t, strict_t) = (COARSE_IOU as f32, STRICT_IOU as f32);
    let mut pred_status = Vec::with_capacity(n_pred);
    let mut pred_display_labels = Vec::with_capacity(n_pred);
    for (p, det) in predictions.iter().enumerate() {
        let label = &det.class_name;
        if let Some(&(_, _, iou)) = strict_matches.iter().find(|m| m.1 == p) {
            pred_status.push(Status::Tp);
            pred_display_labels.push(format!("{label} (TP {})", two_decimals(f64::from(iou))));
        } else if best_same_iou[p] >= coarse_t {
            pred_status.push(Status::Near);
            pred_display_labels.push(format!(
                "{label} (near {})",
                two_decimals(f64::from(best_same_iou[p]))
            ));
        } else if let (true, Some(g)) = (best_any_iou[p] >= strict_t, best_any_gt[p]) {
            pred_status.push(Status::Class);
            pred_display_labels.push(format!(
                "{label} (vs {} {})",
                targets[g].class_name,
                two_decimals(f64::from(best_any_iou[p]))
            ));
        } else {
            pred_status.push(Status::Fp);
            pred_display_labels.push(format!("{label} (FP)"));
        }
    }
    let status_counts = Status::ALL.map(|s| pred_status.iter().filter(|&&x| x == s).count());

    ImageEval {
        tp: coarse.tp,
        n_pred,
        n_gt,
        precision: coarse.precision,
        recall: coarse.recall,
        f1: coarse.f1,
        strict_precision: strict.precision,
        strict_recall: strict.recall,
        strict_f1: strict.f1,
        mean_tp_iou: strict.mean_iou,
        strict_tp_mask,
        tp_ious,
        pred_status,
        pred_display_labels,
        matched_gt_indices: coarse.gt_indices,
        strict_matched_gt_indices: strict.gt_indices,
        status_counts,
    }
}

/// numpy's argmax over a non-empty float32 column: the first largest (IoUs are never NaN here).
fn first_argmax_f32(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(xyxy: [f32; 4], class_id: i32, name: &str) -> Detection {
        Detection {
            xyxy,
            class_id,
            class_name: name.to_string(),
        }
    }

    #[test]
    fn statuses_follow_the_notebooks_precedence() {
        let gt = [
            det([0.0, 0.0, 100.0, 100.0], 0, "person"),
            det([200.0, 0.0, 300.0, 100.0], 2, "car"),
        ];
        let preds = [
            det([0.0, 0.0, 100.0, 90.0], 0, "person"), // IoU 0.9 with its class: tp
            det([0.0, 0.0, 100.0, 40.0], 0, "person"), // 0.4 with a person already matched: near
            det([200.0, 0.0, 300.0, 100.0], 0, "person"), // exact box of the car: class mismatch
            det([500.0, 500.0, 600.0, 600.0], 2, "car"), // nothing: fp
        ];
        let e = evaluate(&preds, &gt);
        assert_eq!(
            e.pred_status,
            vec![Status::Tp, Status::Near, Status::Class, Status::Fp]
        );
        assert_eq!(
            e.pred_display_labels,
            vec![
                "person (TP 0.90)",
                "person (near 0.40)",
                "person (vs car 1.00)",
                "car (FP)"
            ]
        );
        assert_eq!(e.status_counts, [1, 1, 1, 1]);
        assert_eq!((e.tp, e.precision, e.recall), (1, 0.25, 0.5));
        assert_eq!(e.matched_gt_indices, vec![0]);
    }

    #[test]
    fn no_predictions_or_no_ground_truth_score_zero() {
        let gt = [det([0.0, 0.0, 100.0, 100.0], 0, "person")];
        let e = evaluate(&[], &gt);
        assert_eq!((e.precision, e.recall, e.f1, e.n_gt), (0.0, 0.0, 0.0, 1));
        let e = evaluate(&gt, &[]);
        assert_eq!(e.pred_status, vec![Status::Fp]);
        assert_eq!(e.pred_display_labels, vec!["person (FP)"]);
    }

    #[test]
    fn each_ground_truth_matches_once() {
        let gt = [det([0.0, 0.0, 100.0, 100.0], 0, "person")];
        let preds = [
            det([0.0, 0.0, 100.0, 100.0], 0, "person"),
            det([0.0, 0.0, 100.0, 100.0], 0, "person"),
        ];
        let e = evaluate(&preds, &gt);
        assert_eq!(e.tp, 1);
        // Equal scores: numpy's argsort keeps index order for short arrays, reversed: the later one wins.
        assert_eq!(e.strict_tp_mask, vec![false, true]);
    }
}
