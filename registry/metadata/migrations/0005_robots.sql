-- Reserved; the tables arrive with the feature.
SELECT 1;
