"""Numbers reported in the paper (arXiv 2409.10527, ECR_SPEC 7), written beside our tables for side-by-side
reading. Keys are this workflow's variant names; metric names as in our tables."""

TABLE1 = {
    "KBRD": {"AUC": 0.503, "RT@1": 0.040, "RT@10": 0.182, "RT@50": 0.381, "R@1": 0.037, "R@10": 0.175, "R@50": 0.360},
    "KGSF": {"AUC": 0.513, "RT@1": 0.043, "RT@10": 0.195, "RT@50": 0.383, "R@1": 0.040, "R@10": 0.182, "R@50": 0.361},
    "RevCore": {"AUC": 0.514, "RT@1": 0.054, "RT@10": 0.230, "RT@50": 0.410, "R@1": 0.046, "R@10": 0.209,
                "R@50": 0.390},
    "UCCR": {"AUC": 0.499, "RT@1": 0.038, "RT@10": 0.208, "RT@50": 0.423, "R@1": 0.039, "R@10": 0.198, "R@50": 0.407},
    "unicrs": {"AUC": 0.506, "RT@1": 0.052, "RT@10": 0.229, "RT@50": 0.439, "R@1": 0.047, "R@10": 0.212,
               "R@50": 0.414},
    "ecr": {"AUC": 0.541, "RT@1": 0.055, "RT@10": 0.238, "RT@50": 0.452, "R@1": 0.049, "R@10": 0.220, "R@50": 0.428},
}

TABLE3 = {
    "unicrs": {"AUC": 0.506, "RT@10": 0.229, "RT@50": 0.439, "R@10": 0.212, "R@50": 0.414},
    "ecr_l": {"AUC": 0.535, "RT@10": 0.229, "RT@50": 0.444, "R@10": 0.213, "R@50": 0.420},
    "ecr_ls": {"AUC": 0.541, "RT@10": 0.232, "RT@50": 0.442, "R@10": 0.216, "R@50": 0.420},
    "ecr_lg": {"AUC": 0.535, "RT@10": 0.232, "RT@50": 0.453, "R@10": 0.216, "R@50": 0.428},
    "ecr": {"AUC": 0.541, "RT@10": 0.238, "RT@50": 0.452, "R@10": 0.220, "R@50": 0.428},
}

# Columns of each table, in the paper's order, plus the global AUC this workflow adds (ECR_SPEC 8.11).
COLUMNS = {
    "table1": ["AUC", "AUC_global", "RT@1", "RT@10", "RT@50", "R@1", "R@10", "R@50"],
    "table3": ["AUC", "AUC_global", "RT@10", "RT@50", "R@10", "R@50"],
}
PAPER = {"table1": TABLE1, "table3": TABLE3}
# How the paper names the rows of Tables 1 and 3 (the variant keys are this workflow's config names).
PAPER_ROWS = {"unicrs": "UniCRS", "ecr_l": "ECR[L]", "ecr_ls": "ECR[LS]", "ecr_lg": "ECR[LG]", "ecr": "ECR"}
PROTOCOL = ("AUC is the paper's protocol: per consecutive evaluation batch of {auc_batch_size} test samples in "
            "file order, liked vs disliked samples, softmax over all entities at the gold item; batches without "
            "both classes are skipped. AUC_global is the same score over the whole test split. R@k over all "
            "samples, RT@k over liked samples.")


# Reviews kept per generator profile (paper, Section 4.3 / ECR_SPEC 3.8).
REVIEW_COUNTS = {
    "dialogpt": {"reviews": 34_953, "movies": 4_092},
    "llama": {"reviews": 2_459, "movies": 1_553},
}
