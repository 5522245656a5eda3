#!/bin/sh
# Example payload of my_job.jdl: $1 is the job's parameter (1 to 10).
echo "job $CTAPROD_JOB_ID, parameter $1, on $(hostname)"
echo "result of parameter $1" > "result_$1.txt"
