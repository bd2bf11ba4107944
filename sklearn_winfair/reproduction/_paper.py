"""Published figures of the paper, transcribed for the comparison columns.

Source: Yixuan Zhang and Feng Zhou, "Bias Mitigation in Fine-tuning
Pre-trained Models for Enhanced Fairness and Efficiency", arXiv:2403.00625v1,
2024, Tables 2-4 and the claims of Figs. 4-5. The numbers are copied here so
that the package never reads anything outside itself at run time. Err is in
percent; the gaps are fractions; ΔEO is the sum of the TPR and FPR gaps.
Values are ``(mean, std)``; a single published value has ``std = None``.
"""

__all__ = [
    "CITATION",
    "PAPER_TABLE2",
    "PAPER_TABLE3",
    "PAPER_PRETRAINED",
    "PAPER_TABLE4",
    "PAPER_PARAMS",
    "PAPER_FIG4_CLAIM",
    "PAPER_FIG5_CLAIM",
]

CITATION = (
    'Yixuan Zhang and Feng Zhou, "Bias Mitigation in Fine-tuning Pre-trained '
    'Models for Enhanced Fairness and Efficiency", arXiv:2403.00625, 2024'
)

#: Table 2 (Adult): fair pre-trained models before / after fine-tuning.
#: Key ``(constraint, intensity)``; "bias" is ΔEO for "EO" and ΔDP for "DP".
PAPER_TABLE2 = {
    ("EO", 0.1): {"err_pre": (16.835, None), "err_ft": (16.676, 0.313),
                  "bias_pre": (0.068, None), "bias_ft": (0.206, 0.024)},
    ("EO", 0.5): {"err_pre": (17.469, None), "err_ft": (17.168, 0.941),
                  "bias_pre": (0.012, None), "bias_ft": (0.183, 0.037)},
    ("EO", 0.9): {"err_pre": (18.744, None), "err_ft": (17.343, 0.973),
                  "bias_pre": (0.008, None), "bias_ft": (0.186, 0.017)},
    ("DP", 0.1): {"err_pre": (17.332, None), "err_ft": (17.479, 0.068),
                  "bias_pre": (0.125, None), "bias_ft": (0.171, 0.009)},
    ("DP", 0.5): {"err_pre": (17.489, None), "err_ft": (17.773, 0.034),
                  "bias_pre": (0.047, None), "bias_ft": (0.173, 0.023)},
    ("DP", 0.9): {"err_pre": (20.160, None), "err_ft": (17.071, 0.036),
                  "bias_pre": (0.031, None), "bias_ft": (0.172, 0.018)},
}

#: Table 3's pre-trained model on the new task (single values).
PAPER_PRETRAINED = {"err": (16.165, None), "eo_gap": (0.223, None),
                    "dp_gap": (0.192, None)}

#: Table 3 (Adult): key ``(method, intensity)``, intensity None for OURS.
PAPER_TABLE3 = {
    ("Retrain+EO", 0.1): {"err": (16.763, 0.223), "eo_gap": (0.214, 0.027),
                          "dp_gap": (0.196, 0.027)},
    ("Retrain+EO", 0.5): {"err": (17.440, 0.676), "eo_gap": (0.150, 0.040),
                          "dp_gap": (0.183, 0.011)},
    ("Retrain+EO", 0.9): {"err": (18.810, 0.588), "eo_gap": (0.147, 0.031),
                          "dp_gap": (0.184, 0.032)},
    ("Retrain+DP", 0.1): {"err": (16.752, 0.263), "eo_gap": (0.206, 0.035),
                          "dp_gap": (0.174, 0.026)},
    ("Retrain+DP", 0.5): {"err": (17.659, 0.375), "eo_gap": (0.201, 0.024),
                          "dp_gap": (0.168, 0.023)},
    ("Retrain+DP", 0.9): {"err": (18.472, 0.228), "eo_gap": (0.204, 0.023),
                          "dp_gap": (0.143, 0.021)},
    ("OURS", None): {"err": (15.829, 0.340), "eo_gap": (0.197, 0.011),
                     "dp_gap": (0.180, 0.022)},
}

#: Trainable parameters stated in Sec. 4.4.
PAPER_PARAMS = {"OURS": 46, "Retrain": 742}

#: Table 4 (OURS on other architectures), key ``(data, model)``.
PAPER_TABLE4 = {
    ("Adult", "MLP-3"): {"err": (16.678, 0.681), "eo_gap": (0.185, 0.023),
                         "dp_gap": (0.162, 0.027)},
    ("Adult", "MLP-4"): {"err": (16.237, 0.456), "eo_gap": (0.173, 0.029),
                         "dp_gap": (0.170, 0.022)},
    ("Adult", "MLP-5"): {"err": (16.166, 0.337), "eo_gap": (0.179, 0.012),
                         "dp_gap": (0.166, 0.014)},
    ("LFW+a", "ResNet-50"): {"err": (10.634, 0.241), "eo_gap": (0.218, 0.081),
                             "dp_gap": (0.080, 0.032)},
    ("LFW+a", "DenseNet"): {"err": (9.775, 0.131), "eo_gap": (0.232, 0.054),
                            "dp_gap": (0.073, 0.009)},
    ("CelebA", "ResNet-50"): {"err": (17.582, 0.226), "eo_gap": (0.243, 0.061),
                              "dp_gap": (0.182, 0.005)},
    ("CelebA", "DenseNet"): {"err": (18.438, 0.174), "eo_gap": (0.201, 0.028),
                             "dp_gap": (0.169, 0.009)},
}

PAPER_FIG4_CLAIM = (
    "TL vs f+SVD vs OURS on Adult, LFW+a and CelebA: OURS has the lowest error "
    "and the lowest ΔDP and ΔEO on every data set (larger gaps on the image "
    "sets); TL and f+SVD differ little."
)
PAPER_FIG5_CLAIM = (
    "alpha ablation on Adult, alpha in [1/2, 1): as alpha grows, Err decreases "
    "slightly while ΔDP and ΔEO generally increase."
)
