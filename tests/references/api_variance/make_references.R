# R survey's standard errors on R's own api data, for tests/test_variance_api.py.
#
# Run from the repository root (needs R with survey and jsonlite; the test run does not):
#   Rscript tests/references/api_variance/make_references.R
# Output: references.json next to this script. The designs are those of R's ?svydesign and
# ?calibrate examples; the population totals come from apipop.
suppressMessages({
  library(survey)
  library(jsonlite)
})
here <- "tests/references/api_variance"
data(api)
options(survey.lonely.psu = "fail")

designs <- list(
  srs = function() svydesign(id = ~1, fpc = ~fpc, data = apisrs),
  strat = function() svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = apistrat),
  clus1 = function() svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = apiclus1),
  clus2 = function() svydesign(id = ~dnum + snum, fpc = ~fpc1 + fpc2, data = apiclus2),
  clus2_nofpc = function() svydesign(id = ~dnum + snum, weights = ~pw, data = apiclus2)
)
pop_types <- table(apipop$stype)
population <- c(`(Intercept)` = nrow(apipop), stypeH = pop_types[["H"]],
                stypeM = pop_types[["M"]], api99 = sum(apipop$api99))
calibrations <- list(
  none = NULL,
  linear = list(calfun = "linear", bounds = c(-Inf, Inf)),
  raking = list(calfun = "raking", bounds = c(-Inf, Inf)),
  logit = list(calfun = "logit", bounds = c(0.7, 1.7)),
  linear_bounded = list(calfun = "linear", bounds = c(0.85, 1.3))
)
calibrate_with <- function(des, cal) {
  if (is.null(cal)) return(des)
  failed <- FALSE
  out <- tryCatch(withCallingHandlers(
    calibrate(des, ~stype + api99, population = population, calfun = cal$calfun,
              bounds = cal$bounds, epsilon = 1e-13, maxit = 500),
    warning = function(w) {
      failed <<- TRUE
      invokeRestart("muffleWarning")
    }), error = function(e) NULL)
  if (failed) NULL else out
}
pair <- function(est) list(estimate = unname(coef(est)), se = unname(SE(est)),
                           names = names(coef(est)))
# enroll is missing for 6 schools of apiclus2: R's na.rm=TRUE (elsewhere nothing is missing)
na_stats <- function(des) {
  r <- svyratio(~api.stu, ~enroll, des, na.rm = TRUE)
  bm <- svyby(~enroll, ~stype, des, svymean, na.rm = TRUE)
  list(total = pair(svytotal(~enroll, des, na.rm = TRUE)),
       mean = pair(svymean(~enroll, des, na.rm = TRUE)),
       ratio = list(estimate = unname(coef(r)), se = unname(SE(r))),
       by_mean = list(levels = as.character(bm$stype), estimate = unname(coef(bm)),
                      se = unname(SE(bm))))
}
stats <- function(des) {
  bt <- svyby(~api00, ~sch.wide, des, svytotal)
  bm <- svyby(~api00, ~sch.wide, des, svymean)
  r <- svyratio(~api00, ~api99, des)
  list(
    total = pair(svytotal(~api00 + api.stu, des)),
    mean = pair(svymean(~api00 + meals, des)),
    awards = pair(svymean(~awards, des)),
    ratio = list(estimate = unname(coef(r)), se = unname(SE(r))),
    by_total = list(levels = as.character(bt$sch.wide), estimate = unname(coef(bt)),
                    se = unname(SE(bt))),
    by_mean = list(levels = as.character(bm$sch.wide), estimate = unname(coef(bm)),
                   se = unname(SE(bm))),
    na_rm = na_stats(des)
  )
}

refs <- list(population = unname(population), population_names = names(population),
             versions = list(R = R.version.string, survey = as.character(packageVersion("survey"))),
             linearisation = list(), replicates = list(), failed = list())
for (dn in names(designs)) {
  for (cn in names(calibrations)) {
    key <- paste(dn, cn, sep = "/")
    des <- calibrate_with(designs[[dn]](), calibrations[[cn]])
    if (is.null(des)) {
      refs$failed[[length(refs$failed) + 1]] <- key
      next
    }
    refs$linearisation[[key]] <- c(stats(des), list(calibration = cn))
  }
}
# replicate designs R builds deterministically (jackknives), calibrated replicate by replicate
repcases <- list(clus1_JK1 = list(design = "clus1", type = "JK1"),
                 strat_JKn = list(design = "strat", type = "JKn"),
                 clus2_JK1 = list(design = "clus2", type = "JK1"))
for (rn in names(repcases)) {
  rc <- repcases[[rn]]
  rep <- as.svrepdesign(designs[[rc$design]](), type = rc$type)
  for (cn in c("none", "linear", "raking", "logit")) {
    key <- paste(rn, cn, sep = "/")
    des <- calibrate_with(rep, calibrations[[cn]])
    if (is.null(des)) {
      refs$failed[[length(refs$failed) + 1]] <- key
      next
    }
    refs$replicates[[key]] <- c(stats(des), list(calibration = cn, scale = rep$scale,
                                                 n_replicates = ncol(rep$repweights$weights)))
  }
}
json <- toJSON(refs, digits = NA, auto_unbox = TRUE, pretty = TRUE, null = "null")
writeLines(json, file.path(here, "references.json"))
cat("wrote", length(refs$linearisation), "linearisation and", length(refs$replicates),
    "replicate cases; failed:", unlist(refs$failed), "\n")
