/*
 * hfconfig.h - a Hugging Face config.json rewritten for a new dtype, as
 * deltatensors' reconstruction writes it.
 */
#ifndef WD_HFCONFIG_H
#define WD_HFCONFIG_H

/* Writes dst (a new file) from the config.json at src: a JSON object gets
 * its "torch_dtype" and "dtype" keys (where present) set to dtype and is
 * written as Python's json.dumps(cfg, indent=2) + "\n"; anything Python's
 * json.loads would refuse, anything but an object, and files over 16 MiB
 * are copied as they are. */
int wd__hfconfig_write(const char *src, const char *dst, const char *dtype);

#endif
