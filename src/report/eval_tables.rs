//! Text tables (tabled) of evaluation runs, in the notebook's terms.

use tabled::settings::Style;
use tabled::{Table, Tabled};

use crate::eval::coco_run::CocoRecord;
use crate::eval::summary::ClassRecall;
use crate::eval::vqa_run::VqaRecord;

#[derive(Tabled)]
struct VqaRow {
    #[tabled(rename = "#")]
    sample: usize,
    #[tabled(rename = "Question")]
    question: String,
    #[tabled(rename = "Prediction")]
    prediction: String,
    #[tabled(rename = "GT")]
    gt: String,
}

/// The notebook's "Sample correct/incorrect predictions" (first `limit` of each), as tables.
pub fn vqa_examples(records: &[VqaRecord], correct: bool, limit: usize) -> String {
    let rows = records
        .iter()
        .filter(|r| (r.accuracy > 0.0) == correct)
        .take(limit)
        .map(|r| VqaRow {
            sample: r.sample,
            question: r.question.clone(),
            prediction: r.prediction.clone(),
            gt: r.gt_answer.clone(),
        });
    let mut table = Table::new(rows);
    table.with(Style::markdown());
    table.to_string()
}

#[derive(Tabled)]
struct CocoRow {
    #[tabled(rename = "#")]
    sample: usize,
    #[tabled(rename = "image_id")]
    image_id: i64,
    #[tabled(rename = "GT")]
    n_gt: usize,
    #[tabled(rename = "Pred")]
    n_pred: usize,
    #[tabled(rename = "P/R/F1 @0.3")]
    coarse: String,
    #[tabled(rename = "P/R/F1 @0.5")]
    strict: String,
    #[tabled(rename = "TP IoU")]
    iou: String,
    #[tabled(rename = "TP/near/class/FP")]
    statuses: String,
}

/// One row per image.
pub fn coco_images(records: &[CocoRecord]) -> String {
    let rows = records.iter().map(|r| {
        let e = &r.eval;
        let [tp, near, class, fp] = e.status_counts;
        CocoRow {
            sample: r.sample,
            image_id: r.image_id,
            n_gt: e.n_gt,
            n_pred: e.n_pred,
            coarse: format!("{:.2} / {:.2} / {:.2}", e.precision, e.recall, e.f1),
            strict: format!(
                "{:.2} / {:.2} / {:.2}",
                e.strict_precision, e.strict_recall, e.strict_f1
            ),
            iou: format!("{:.2}", e.mean_tp_iou),
            statuses: format!("{tp}/{near}/{class}/{fp}"),
        }
    });
    let mut table = Table::new(rows);
    table.with(Style::markdown());
    table.to_string()
}

#[derive(Tabled)]
struct ClassRow {
    #[tabled(rename = "Class")]
    name: String,
    #[tabled(rename = "Matched @0.3")]
    matched: String,
    #[tabled(rename = "Recall")]
    recall: String,
}

/// Per-class coarse recall (top 10 classes by ground-truth count).
pub fn per_class(rows: &[ClassRecall]) -> String {
    let mut table = Table::new(rows.iter().map(|c| ClassRow {
        name: c.name.clone(),
        matched: format!("{}/{}", c.matched, c.total),
        recall: format!("{:.2}", c.recall),
    }));
    table.with(Style::markdown());
    table.to_string()
}
