"""cl_binvae."""
