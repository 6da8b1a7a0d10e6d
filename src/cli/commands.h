// Subcommands of the spd binary: each takes argv with argv[0] = its own name
// and returns the process exit status.
#ifndef SPD_CLI_COMMANDS_H
#define SPD_CLI_COMMANDS_H

int cmd_check(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_train_target(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_eval(int argc, char **argv);

#endif
