/*
 * empty-spank.c: a SPANK plugin that does nothing, for bench/spank-phases.sh:
 * what loading and calling any plugin costs srun and slurmstepd.
 */
#include <slurm/spank.h>

SPANK_PLUGIN(empty, 1)

int slurm_spank_init(spank_t sp, int argc, char **argv);

int slurm_spank_init(spank_t sp, int argc, char **argv)
{
	(void)sp;
	(void)argc;
	(void)argv;
	return 0;
}
