# R side of benchmarks/bench_variance.py: R survey's standard errors on the same design.
# Usage: Rscript variance.R <dir> <replicates>
# Reads <dir>/units.bin (float64, column-major n x k; names in <dir>/columns.txt) and
# <dir>/population.csv (name,total in R's model.matrix order); prints one JSON line per step
# with the seconds it took (data in memory; file reading excluded) and the SEs it found.
suppressMessages(library(survey))
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]
reps <- as.integer(args[2])
cols <- readLines(file.path(dir, "columns.txt"))
n <- as.integer(readLines(file.path(dir, "n.txt")))
raw <- readBin(file.path(dir, "units.bin"), what = "double", n = n * length(cols))
units <- as.data.frame(matrix(raw, nrow = n, dimnames = list(NULL, cols)))
rm(raw)
cats <- grep("^c[0-9]+$", cols, value = TRUE)
for (v in cats) units[[v]] <- factor(units[[v]], levels = sort(unique(units[[v]])))
conts <- grep("^x[0-9]+$", cols, value = TRUE)
ys <- grep("^y[0-9]+$", cols, value = TRUE)
pop <- read.csv(file.path(dir, "population.csv"))
population <- setNames(pop$total, pop$name)
fml <- as.formula(paste("~", paste(c(cats, conts), collapse = " + ")))
fy <- as.formula(paste("~", paste(ys, collapse = " + ")))
emit <- function(step, secs, se = NULL, note = "") {
  se_txt <- if (is.null(se)) "null" else paste0("[", paste(sprintf("%.17g", se), collapse = ","), "]")
  cat(sprintf('{"step": "%s", "seconds": %.6f, "se": %s, "note": "%s"}\n', step, secs, se_txt, note))
}
elapsed <- function(expr) system.time(expr)[["elapsed"]]
t <- elapsed(des <- svydesign(id = ~psu, strata = ~stratum, weights = ~d, data = units))
emit("design", t)
t <- elapsed(ht <- svytotal(fy, des))
emit("ht_se", t, SE(ht))
t <- elapsed(cal <- calibrate(des, fml, population = population, calfun = "raking",
                              epsilon = 1e-10, maxit = 100))
emit("calibrate", t)
t <- elapsed(lin <- svytotal(fy, cal))
emit("linearised_se", t, SE(lin))
if (reps > 0) {
  set.seed(1)
  t <- elapsed(rep <- as.svrepdesign(des, type = "subbootstrap", replicates = reps))
  emit("replicates_make", t, note = sprintf("%d subbootstrap replicates", reps))
  t <- elapsed(repcal <- calibrate(rep, fml, population = population, calfun = "raking",
                                   epsilon = 1e-10, maxit = 100))
  emit("replicates_calibrate", t, note = sprintf("%d replicates", reps))
  t <- elapsed(rt <- svytotal(fy, repcal))
  emit("replicates_se", t, SE(rt))
}
