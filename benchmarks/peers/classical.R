# R side of benchmarks/bench_classical.py: time R survey and sampling on the same problem.
# Usage: Rscript classical.R <dir> <kind: raking|linear> <tools: comma list> [repeats]
# Reads <dir>/units.csv (v0..v3 codes, c0, c1, d) and <dir>/margins.csv (variable, level, total);
# writes <dir>/r_<tool>.csv (weights) and prints one JSON line per tool with the seconds taken
# from the in-memory data frame to the weights (design + calibration; file reading excluded).
suppressMessages({library(survey); library(sampling)})
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]; kind <- args[2]; tools <- strsplit(args[3], ",")[[1]]
repeats <- if (length(args) > 3) as.integer(args[4]) else 1L
# best of `repeats` elapsed times, as for calibopt
best_of <- function(expr_fn) min(replicate(repeats, expr_fn()))
units <- read.csv(file.path(dir, "units.csv"))
margins <- read.csv(file.path(dir, "margins.csv"), colClasses = c("character", "character", "numeric"))
cat_vars <- c("v0", "v1", "v2", "v3")
for (v in cat_vars) units[[v]] <- factor(units[[v]], levels = sort(unique(units[[v]])))
cont_vars <- if (kind == "linear") c("c0", "c1") else character(0)
N <- sum(margins$total[margins$variable == "v0"])
fml <- as.formula(paste("~", paste(c(cat_vars, cont_vars), collapse = " + ")))
pop_vector <- function() {
  tot <- c("(Intercept)" = N)
  for (v in cat_vars) {
    m <- margins[margins$variable == v, ]
    lev <- levels(units[[v]])[-1]
    tot <- c(tot, setNames(m$total[match(lev, m$level)], paste0(v, lev)))
  }
  for (v in cont_vars) tot <- c(tot, setNames(margins$total[margins$variable == v], v))
  tot
}
emit <- function(tool, secs, w, note = "") {
  write.csv(data.frame(w = w), file.path(dir, paste0("r_", tool, ".csv")), row.names = FALSE)
  cat(sprintf('{"tool": "%s", "seconds": %.6f, "note": "%s"}\n', tool, secs, note))
}
calfun <- if (kind == "raking") "raking" else "linear"
for (tool in tools) {
  res <- tryCatch({
    if (tool == "survey" || tool == "survey_sparse") {
      t <- best_of(function() system.time({
        des <- svydesign(ids = ~1, weights = ~d, data = units)
        cal <- calibrate(des, fml, population = pop_vector(), calfun = calfun,
                         epsilon = 1e-10, maxit = 100, sparse = (tool == "survey_sparse"))
        w <<- weights(cal)
      })[["elapsed"]])
      emit(tool, t, w)
    } else if (tool == "rake" && kind == "raking") {
      t <- best_of(function() system.time({
        des <- svydesign(ids = ~1, weights = ~d, data = units)
        pops <- lapply(cat_vars, function(v) {
          m <- margins[margins$variable == v, ]
          df <- data.frame(factor(m$level, levels = levels(units[[v]])), m$total)
          names(df) <- c(v, "Freq"); df
        })
        r <- rake(des, lapply(cat_vars, function(v) as.formula(paste("~", v))), pops,
                  control = list(maxit = 100, epsilon = 1e-10, verbose = FALSE))
        w <<- weights(r)
      })[["elapsed"]])
      emit(tool, t, w)
    } else if (tool == "sampling") {
      t <- best_of(function() system.time({
        Xs <- model.matrix(fml, units)
        g <- calib(Xs, units$d, pop_vector(), method = calfun, max_iter = 500)
        w <<- g * units$d
      })[["elapsed"]])
      emit(tool, t, w)
    }
  }, error = function(e) cat(sprintf('{"tool": "%s", "error": "%s"}\n', tool,
                                     gsub('"', "'", conditionMessage(e)))))
}
