"""Evaluation of frozen features: kNN, linear and MLP probes, RankMe / alpha-ReQ, reports.

Everything here takes feature matrices (torch tensors or numpy arrays) and labels; extracting the
features from a checkpoint is the caller's job, so each probe can be tested on synthetic data.
"""

from jessl.eval.knn import knn_accuracy, knn_classify
from jessl.eval.probes import (LinearProbeResult, MLPProbeResult, SweepResult, linear_probe,
                               mlp_probe, sweep_linear)
from jessl.eval.rankme import alpha_req, eigenspectrum, rankme
from jessl.eval.report import write_report
from jessl.eval.splits import stratified_split

__all__ = [
    "knn_classify", "knn_accuracy",
    "linear_probe", "sweep_linear", "mlp_probe", "LinearProbeResult", "MLPProbeResult", "SweepResult",
    "rankme", "alpha_req", "eigenspectrum",
    "write_report",
    "stratified_split",
]
