"""What a run leaves behind on this machine: the write-ahead journal, and views of it."""
