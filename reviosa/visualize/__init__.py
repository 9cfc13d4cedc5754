"""Pictures for people: predicted actor/target masks drawn over video frames (``overlay``), written as GIF or MP4."""
