//! Training with burn: data loading, models and the staged trainer.
