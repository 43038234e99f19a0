"""The second system: frontal film, lateral film and report from any subset of the others (after
MedCoDi-M / XGeM), small enough to train and sample on a CPU. Films come from a latent diffusion model
conditioned on a shared space (report, findings, the other view); reports from films come from the drafter.
"""
