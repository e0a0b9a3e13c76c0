"""Training: the VisualCritic curriculum's stages (LoRA by default) on ``accelerate``, one ``vcritic train`` run each.

It reads the data folders :mod:`vcritic.data` writes (:mod:`vcritic.data.datadir`, :mod:`vcritic.data.dialogues`)
and shares scoring's prompts (:mod:`vcritic.readout.prompts`), prompt rendering and padding
(:class:`vcritic.inference.critic.Encoder`) and model loading (:func:`vcritic.inference.loading.load_model`), so a
trained model is asked at scoring time exactly what it was taught.
"""
