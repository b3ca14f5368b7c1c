# R references for calibopt's tests on R survey's own api data (issue 15).
# Run from this folder:  Rscript make_references.R
# Needs R with the survey package (Debian: apt-get install r-base-core r-cran-survey).
# Writes one CSV per case (school id cds, calibrated weight w, g = w / d, full precision) and
# meta.json (versions, calls, population totals, the api00 total of each calibrated design).
suppressMessages(library(survey))
data(api)

pop_types <- table(apipop$stype)                     # E 4421, H 755, M 1018
pop_schwide <- table(apipop$sch.wide)                # No 1072, Yes 5122
totals <- c(`(Intercept)` = nrow(apipop), stypeH = pop_types[["H"]],
            stypeM = pop_types[["M"]], api99 = sum(apipop$api99))

dstrat <- svydesign(id = ~1, strata = ~stype, weights = ~pw, data = apistrat, fpc = ~fpc)
dclus1 <- svydesign(id = ~dnum, weights = ~pw, data = apiclus1, fpc = ~fpc)
dclus2 <- svydesign(id = ~dnum + snum, weights = ~pw, data = apiclus2, fpc = ~fpc1 + fpc2)
dsrs <- svydesign(id = ~1, weights = ~pw, data = apisrs, fpc = ~fpc)

cases <- list(
  strat_raking = list(
    sample = "apistrat",
    call = "calibrate(dstrat, ~stype + api99, totals, calfun = 'raking', epsilon = 1e-12, maxit = 100)",
    design = calibrate(dstrat, ~stype + api99, totals, calfun = "raking", epsilon = 1e-12,
                       maxit = 100)),
  clus1_logit = list(
    sample = "apiclus1",
    call = "calibrate(dclus1, ~stype + api99, totals, calfun = 'logit', bounds = c(0.7, 1.7), epsilon = 1e-12, maxit = 100)",
    design = calibrate(dclus1, ~stype + api99, totals, calfun = "logit", bounds = c(0.7, 1.7),
                       epsilon = 1e-12, maxit = 100)),
  clus2_linear = list(
    sample = "apiclus2",
    call = "calibrate(dclus2, ~stype + api99, totals, calfun = 'linear')",
    design = calibrate(dclus2, ~stype + api99, totals, calfun = "linear")),
  srs_rake = list(
    sample = "apisrs",
    call = "rake(dsrs, list(~stype, ~sch.wide), list(pop_types, pop_schwide), control = list(maxit = 1000, epsilon = 1e-12))",
    design = rake(dsrs, list(~stype, ~sch.wide),
                  list(as.data.frame(pop_types, responseName = "Freq", stringsAsFactors = FALSE) |>
                         setNames(c("stype", "Freq")),
                       as.data.frame(pop_schwide, responseName = "Freq", stringsAsFactors = FALSE) |>
                         setNames(c("sch.wide", "Freq"))),
                  control = list(maxit = 1000, epsilon = 1e-12, verbose = FALSE)))
)

meta <- list(r = R.version.string, survey = as.character(packageVersion("survey")),
             totals = as.list(totals), pop_types = as.list(pop_types),
             pop_schwide = as.list(pop_schwide), cases = list())
for (name in names(cases)) {
  case <- cases[[name]]
  sample <- get(case$sample)
  w <- weights(case$design)
  out <- data.frame(cds = sample$cds, w = sprintf("%.17g", w), g = sprintf("%.17g", w / sample$pw))
  write.csv(out, paste0(name, ".csv"), row.names = FALSE, quote = FALSE)
  api00 <- svytotal(~api00, case$design)
  meta$cases[[name]] <- list(sample = case$sample, call = case$call,
                             api00_total = sprintf("%.17g", coef(api00)[[1]]))
}
writeLines((function(x) {
  # a tiny JSON writer (no jsonlite dependency)
  enc <- function(v) {
    if (is.list(v)) {
      if (is.null(names(v))) return(paste0("[", paste(sapply(v, enc), collapse = ", "), "]"))
      return(paste0("{", paste(sprintf("\"%s\": %s", names(v), sapply(v, enc)), collapse = ", "), "}"))
    }
    if (is.character(v)) return(sprintf("\"%s\"", gsub("\"", "\\\\\"", v)))
    sprintf("%.17g", v)
  }
  enc(x)
})(meta), "meta.json")
