"""What a loaded model is asked: predictions, class activation maps, CAM localization, robustness and transfer
reports, and their pictures."""
