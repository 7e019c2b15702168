"""Reading the bounce mailbox and classifying what came back."""
