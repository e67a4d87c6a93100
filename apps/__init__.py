"""Applications built on vsae's public analysis and intervention layers (the Gradio demo)."""
