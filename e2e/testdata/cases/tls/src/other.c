__thread int shared_depth = 50;
