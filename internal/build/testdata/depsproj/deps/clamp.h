int clamp_value(int v);
int scale_value(int v);
