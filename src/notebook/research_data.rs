//! The data of the notebook's chart-analysis figure (drawn by [`crate::report::research_chart`]):
//! training vs validation loss over 20 epochs (numpy seed 42 noise, overfitting from epoch 15)
//! and a four-model accuracy bar chart.

use crate::report::research_chart::ResearchData;

/// `train_noise` and `val_noise` are the notebook's `np.random.normal(0, 0.05, 20)` and
/// `np.random.normal(0, 0.08, 20)` draws after `np.random.seed(42)`.
pub fn from_noise(train_noise: &[f64], val_noise: &[f64]) -> ResearchData {
    let epochs: Vec<f64> = (1..=20).map(f64::from).collect();
    let train_loss = epochs
        .iter()
        .zip(train_noise)
        .map(|(e, n)| 2.5 * (-0.15 * e).exp() + 0.1 + n)
        .collect();
    let mut val_loss: Vec<f64> = epochs
        .iter()
        .zip(val_noise)
        .map(|(e, n)| 2.5 * (-0.12 * e).exp() + 0.3 + n)
        .collect();
    // val_loss[14:] += np.linspace(0, 0.4, 6)
    for (i, v) in val_loss.iter_mut().skip(14).enumerate() {
        *v += 0.4 * i as f64 / 5.0;
    }
    ResearchData {
        epochs,
        train_loss,
        val_loss,
        models: ["CNN", "ResNet", "ViT", "Ours"],
        accuracy: [78.2, 85.6, 89.1, 92.3],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overfitting_ramp_is_added_from_epoch_15() {
        let zero = [0.0; 20];
        let d = from_noise(&zero, &zero);
        let base = |e: f64| 2.5 * (-0.12 * e).exp() + 0.3;
        assert!((d.val_loss[13] - base(14.0)).abs() < 1e-12);
        assert!((d.val_loss[14] - base(15.0)).abs() < 1e-12);
        assert!((d.val_loss[15] - base(16.0) - 0.08).abs() < 1e-12);
        assert!((d.val_loss[19] - base(20.0) - 0.4).abs() < 1e-12);
        assert!((d.train_loss[0] - (2.5 * (-0.15f64).exp() + 0.1)).abs() < 1e-12);
    }
}
