"""Training: the VisualCritic curriculum (data construction, then three stages of LoRA tuning).

The wing shares the model core's prompts (:mod:`vcritic.readout.prompts`), prompt rendering and padding
(:class:`vcritic.inference.critic.Encoder`), datasets (:mod:`vcritic.datasets`) and model loading
(:func:`vcritic.inference.loading.load_model`), so a trained model is asked at scoring time exactly what it was taught.
"""
