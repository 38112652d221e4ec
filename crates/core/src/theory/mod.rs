//! Theory calculators: QHM on quadratics, plan invariants, PAC-Bayes proxy, ASGD.
