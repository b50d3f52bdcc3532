"""Show-o (Phi-1.5 + MAGVIT-v2, MaskGIT decoding) behind the stepwise generator interface."""
