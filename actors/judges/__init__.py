"""Judge models: the LLaVA-OneVision reward models of the paper (ORM, PRM, PARM, PARM++) and a
CLIP-score outcome judge. Plain Python and torch; Ray hosts them elsewhere."""
