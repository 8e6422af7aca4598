"""Training programs and their settings: MACE (mace_run_train) and DeePMD (dp); no AiiDA imports."""
