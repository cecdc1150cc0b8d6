"""The GAN2Shape optimisation (spec §1, §5, §6): steps, stages, the bank, resume, bundle writing.

Modules:
    model     Model (D, A, V, L, E + frozen generator and perceptual net) and the step-1/2/3 forwards; Target
    trainer   Trainer: the phase loop (fresh Adam per phase), collection bank, joint mode, state save/resume; plan()
    bank      Bank of projected samples with the official index quirk
    state     the training-state file next to the output (atomic, fingerprinted)
    previews  per-stage rotation / relighting frames (§10.1)
    result    the trained model → bundle files and JSON
    run       reconstruct(Request, Progress) -> bundle path; pretrain([Request], out, Progress) -> summary
    supervise V and L taught the default category's labelled renders (`engine train-views`)
"""
